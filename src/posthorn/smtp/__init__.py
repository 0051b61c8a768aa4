"""SMTP, receiving side (RFC 5321 and the ESMTP extensions we offer).

Pure parts, no I/O: `codes` (every reply and `SMTPError`), `protocol` (the command grammar),
`data` (DATA / BDAT content readers). `session` is the state machine on top of them and `server`
the asyncio shell that owns the socket (STYLE.md point 1). The package never imports delivery or
the store: its outputs are replies and spool entries (DESIGN.md "Ownership").
"""
