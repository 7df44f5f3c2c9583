"""The daemon and its edges (the pure rules are in :mod:`rules`)."""

#: The name this project is installed under (its version is the monitor's).
DISTRIBUTION = "ibkr-margin-monitor"


def installed_version(distribution: str) -> str:
    """The installed version of ``distribution``, ``unknown`` when it is not installed (a
    bare checkout). ``importlib.metadata`` is imported here, on first use, not with the
    package."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(distribution)
    except PackageNotFoundError:
        return "unknown"
