"""mi_u values as a customer's mapping table may hold them; each must reach Movable Ink exactly."""

HOSTILE_MI_US = [
    'quo"te',
    "back\\slash",
    "ünïcødé-用户-🙂",
    "with  spaces inside ",
    "../x/",
    "/etc/passwd?x=1#frag",
    '{"mi_u": "injected"}',
    "new\nline\ttab",
    "L" * 5000,
]
