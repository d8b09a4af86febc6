"""`netgraph bench`: placeholder until its issue lands (being built in this session)."""

from netgraph.errors import NetgraphError


def add_parser(sub) -> None:
    p = sub.add_parser("bench", help="(not yet available)")
    p.set_defaults(func=run)


def run(args) -> int:
    raise NetgraphError("'netgraph bench' is not available yet")
