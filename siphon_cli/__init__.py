"""``siphon``: the command line client of siphon's public HTTP API.

    siphon convert FILE... [-o DIR] [--timeout S]   upload, follow, download each MP3
    siphon status JOB_ID                             where a job is
    siphon jobs                                      the server's jobs (when it lists them)
    siphon cancel JOB_ID                             stop a job (when the server can)
    siphon keys new NAME [--admin]                   a new API key and its keys-file line (offline)

It talks HTTP to ``SIPHON_URL`` (default ``http://localhost:5000``) and nothing else: it imports
neither ``services`` nor ``shared``, so it can be shipped on its own. An API key (``--api-key``
or ``SIPHON_API_KEY``) goes with every request as ``Authorization: Bearer <key>``.

    api.py       SiphonClient: the HTTP calls, and errors mapped to the ones below
    follow.py    following a job until it ends (its Server-Sent Events; polling when there are none)
    progress.py  the progress bars (rich), on stderr so stdout stays scriptable
    keys.py      new API keys and their keys-file lines
    main.py      the click commands and their exit codes
"""
