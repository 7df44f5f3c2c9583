"""One module per rule, named by the rule's id: its settings dataclass, its function and its
catalog entry ``SPEC``. :mod:`rules.catalog` lists them in order; adding a rule is one module
here, one line there, and its tests.
"""
