"""The Backend.AI API client (session and API modes) with an injectable transport.

May import `requests`, `sshkit.errors` and `sshkit.settings`; never the relay or
the CLI. The one import from `sshkit.formats` is the pure download parser
(`sshkit.formats.download`), done lazily inside `BackendClient`, so that
`download_session_file` hands callers bytes that are already safety-checked.

`auth` and `tunnel` are stdlib-only: the relay imports them on every ssh connection.
"""
