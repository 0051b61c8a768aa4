"""Policy checks that return verdicts instead of raising (STYLE.md, after maddy).

Each module is pure logic over facts the caller gathers: `relay` decides whether a recipient
is delivered here, relayed, or refused; `limits` counts connections and failed logins. The
protocol sessions turn verdicts into replies; nothing here knows about sockets or wire formats.
"""
