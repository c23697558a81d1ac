"""The docs say what the code does: docs/configuration.md's table is ``shared.config.Settings``,
row by row; every conversion error code and every service README's variable is a real one; the
README stays a first screen.

The table is generated, not written: ``.venv/bin/python -m tests.unit.test_docs --write`` rewrites
it between the ``settings-table`` markers in docs/configuration.md (without ``--write``: prints it).
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
CONFIGURATION = ROOT / "docs" / "configuration.md"
API = ROOT / "docs" / "api.md"
MAX_README_LINES = 200
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
    text = CONFIGURATION.read_text()
    assert TABLE_BEGIN in text and TABLE_END in text, "docs/configuration.md lost its settings-table markers"
    return text.split(TABLE_BEGIN, 1)[1].split(TABLE_END, 1)[0].strip()


def write_settings_table() -> None:
    """Rewrite docs/configuration.md's table from ``Settings``."""
    text = CONFIGURATION.read_text()
    head, rest = text.split(TABLE_BEGIN, 1)
    tail = rest.split(TABLE_END, 1)[1]
    CONFIGURATION.write_text(f"{head}{TABLE_BEGIN}\n{render_settings_table()}\n{TABLE_END}{tail}")


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
    assert not missing, f"docs/configuration.md's table lacks {sorted(missing)}; regenerate it (see {__name__})"


def test_readme_table_names_no_variable_the_config_does_not_read():
    stale = set(ROW_NAME.findall(readme_settings_table())) - env_var_names()
    assert not stale, f"docs/configuration.md documents {sorted(stale)}, which shared.config does not read"


def test_readme_table_is_exactly_the_generated_one():
    assert readme_settings_table() == render_settings_table(), (
        "docs/configuration.md's table differs from shared.config.Settings (a default, bound or description "
        "changed); regenerate it with: .venv/bin/python -m tests.unit.test_docs --write"
    )


def test_the_api_docs_list_every_conversion_error_code():
    codes = {value for name, value in vars(media_codes).items() if name.isupper() and isinstance(value, str)}
    text = API.read_text()
    missing = {code for code in codes if f"`{code}`" not in text}
    assert not missing, f"docs/api.md does not list the conversion error codes {sorted(missing)}"


def test_the_readme_fits_on_a_screen_and_its_links_lead_somewhere():
    text = README.read_text()
    assert len(text.splitlines()) <= MAX_README_LINES
    for target in re.findall(r"\]\(((?:docs|services)/[^)#]+)", text):
        assert (ROOT / target).exists(), f"README.md links to {target}, which does not exist"


def test_the_readme_downloads_with_curl_fail_and_the_servers_name():
    assert "curl -fOJ" in README.read_text() and "curl -O " not in README.read_text()


def test_service_readmes_name_only_variables_that_are_read():
    known = env_var_names() | gunicorn_env_vars()
    for service in SERVICES:
        readme = ROOT / "services" / service / "README.md"
        named = set(ROW_NAME.findall(readme.read_text()))
        assert named, f"{readme.relative_to(ROOT)} has no environment table"
        unknown = named - known
        assert not unknown, f"{readme.relative_to(ROOT)} names {sorted(unknown)}, which nothing reads"


if __name__ == "__main__":
    import sys

    if sys.argv[1:] == ["--write"]:
        write_settings_table()
    else:
        print(render_settings_table())
