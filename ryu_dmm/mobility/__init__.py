"""Sans-IO mobility logic (RFC 8885 §3): the CMD and MAAR cores.

Each core takes an input event plus ``now`` (seconds since 1970, the clock the RFC 5213 timestamp
option uses) and returns a list of effects. No sockets, no clock, no Ryu.
"""
