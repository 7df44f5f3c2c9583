"""The simulated IB Gateway: a TWS API server for the demo, the tests and the benchmarks.

It imports nothing of the daemon (``monitor`` outside this package) and nothing of ``rules``.

- ``protocol.py``  the TWS API wire format: framing, message ids, every message encoded
- ``state.py``     the accounts, positions and figures (NLV, requirements, cushion, ...)
- ``server.py``    the asyncio TCP server (:class:`~monitor.sim.server.SimulatedGateway`)
- ``scenarios.py`` scenario files: pydantic models, one per timeline action; loader; JSON Schema
- ``scenarios/``   the built-in scenario files (``selloff``, ``healthy``, ``trading_day``, ...)
- ``receiver.py``  a local HTTP endpoint for Apprise ``json://`` notifications
"""
