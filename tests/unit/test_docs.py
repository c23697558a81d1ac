"""The docs say what the code does: the README's configuration table is ``shared.config.Settings``,
row by row; every conversion error code and every service README's variable is a real one.

The table is generated, not written: print it with ``.venv/bin/python -m tests.unit.test_docs``
and paste it between the ``settings-table`` markers in README.md.
"""

from __future__ import annotations

import re
import typing
from pathlib import Path

import annotated_types
from pydantic.fields import FieldInfo

from services.conversion import media_codes
from shared.config import Settings, env_var_names

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
TABLE_BEGIN = "<!-- settings-table:begin (generated: .venv/bin/python -m tests.unit.test_docs) -->"
TABLE_END = "<!-- settings-table:end -->"
SERVICES = ("gateway", "upload", "conversion", "metadata")
ROW_NAME = re.compile(r"^\| `([A-Z][A-Z0-9_]*)` \|", re.MULTILINE)

MiB, GiB = 1024**2, 1024**3
UNITS_BY_SUFFIX = {"_seconds": "seconds", "_bytes": "bytes", "_attempts": "count", "_retries": "count"}


# --- rendering the table -------------------------------------------------------------------
def unit_of(name: str) -> str:
    """The unit a setting is in, from its name's suffix (siphon's naming rule)."""
    return next((unit for suffix, unit in UNITS_BY_SUFFIX.items() if name.endswith(suffix)), "—")


def default_of(name: str, field: FieldInfo) -> str:
    """The default as an environment value, with a readable size or duration where it helps."""
    value = field.default
    if value is None:
        return "*(unset)*"
    if value == "":
        return "*(empty)*"
    text = f"{value:g}" if isinstance(value, float) else str(value)
    if name.endswith("_bytes") and value >= MiB:
        return f"`{text}` ({value / GiB:g} GiB)" if value >= GiB else f"`{text}` ({value / MiB:g} MiB)"
    if name.endswith("_seconds") and value >= 3600:
        return f"`{text}` ({value / 3600:g} h)"
    if name.endswith("_seconds") and value >= 60:
        return f"`{text}` ({value / 60:g} min)"
    return f"`{text}`"


def allowed_of(field: FieldInfo) -> str:
    """The values validation accepts: the choices of a Literal, bounds, or a pattern."""
    if typing.get_origin(field.annotation) is typing.Literal:
        return ", ".join(f"`{choice}`" for choice in typing.get_args(field.annotation))
    rules = []
    for rule in field.metadata:
        if isinstance(rule, annotated_types.Gt):
            rules.append(f"> {rule.gt}")
        elif isinstance(rule, annotated_types.Ge):
            rules.append(f"≥ {rule.ge}")
        elif isinstance(rule, annotated_types.Le):
            rules.append(f"≤ {rule.le}")
        elif getattr(rule, "pattern", None):
            rules.append(f"`{rule.pattern}`")
    return ", ".join(rules) or "—"


def render_settings_table() -> str:
    """README's configuration table: one row per ``Settings`` field, in declaration order."""
    lines = ["| Variable | Default | Unit | Allowed | Meaning |", "| --- | --- | --- | --- | --- |"]
    for name, field in Settings.model_fields.items():
        meaning = (field.description or "").replace("|", "\\|")
        lines.append(
            f"| `{name.upper()}` | {default_of(name, field)} | {unit_of(name)} | {allowed_of(field)} | {meaning} |"
        )
    return "\n".join(lines)


def readme_settings_table() -> str:
    text = README.read_text()
    assert TABLE_BEGIN in text and TABLE_END in text, "README.md lost its settings-table markers"
    return text.split(TABLE_BEGIN, 1)[1].split(TABLE_END, 1)[0].strip()


def gunicorn_env_vars() -> set[str]:
    """The variables the gunicorn.conf.py files and their shared base read (``os.environ.get("NAME", ...)``)."""
    found = set()
    for conf in [*ROOT.glob("services/*/gunicorn.conf.py"), ROOT / "shared" / "gunicorn_base.py"]:
        found |= set(re.findall(r"os\.environ\.get\(\s*[\"']([A-Z0-9_]+)[\"']", conf.read_text()))
    return found


# --- the tests ------------------------------------------------------------------------------
def test_every_setting_has_a_row_in_the_readme_table():
    documented = set(ROW_NAME.findall(readme_settings_table()))
    missing = env_var_names() - documented
    assert not missing, f"README.md's configuration table lacks {sorted(missing)}; regenerate it (see {__name__})"


def test_readme_table_names_no_variable_the_config_does_not_read():
    stale = set(ROW_NAME.findall(readme_settings_table())) - env_var_names()
    assert not stale, f"README.md documents {sorted(stale)}, which shared.config does not read"


def test_readme_table_is_exactly_the_generated_one():
    assert readme_settings_table() == render_settings_table(), (
        "README.md's configuration table differs from shared.config.Settings (a default, bound or description "
        "changed); regenerate it with: .venv/bin/python -m tests.unit.test_docs"
    )


def test_readme_lists_every_conversion_error_code():
    codes = {value for name, value in vars(media_codes).items() if name.isupper() and isinstance(value, str)}
    text = README.read_text()
    missing = {code for code in codes if f"`{code}`" not in text}
    assert not missing, f"README.md does not list the conversion error codes {sorted(missing)}"


def test_service_readmes_name_only_variables_that_are_read():
    known = env_var_names() | gunicorn_env_vars()
    for service in SERVICES:
        readme = ROOT / "services" / service / "README.md"
        named = set(ROW_NAME.findall(readme.read_text()))
        assert named, f"{readme.relative_to(ROOT)} has no environment table"
        unknown = named - known
        assert not unknown, f"{readme.relative_to(ROOT)} names {sorted(unknown)}, which nothing reads"


if __name__ == "__main__":
    print(render_settings_table())
