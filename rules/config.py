"""The configuration of every rule: :class:`RulesConfig`, one section per catalog entry.

Standard library only. The fields are derived from :data:`rules.catalog.CATALOG` (id and
settings class of each rule, in catalog order), so adding a rule adds its ``[rules.<id>]``
section; nothing here lists the rules. The settings layer (pydantic-settings) uses the class
directly as a field type: it is a frozen standard-library dataclass whose
``__pydantic_config__`` forbids unknown keys, and each section's ``__post_init__`` names the
key of a bad value.

Access a section typed with :meth:`RulesConfig.section` (``config.section(StaleDataConfig)``);
``config.stale_data`` works too but a type checker sees it as ``Any``, since no class
statement lists the fields.
"""

from __future__ import annotations

from dataclasses import Field, dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from rules.catalog import CATALOG
from rules.common import RuleConfig
from rules.validation import FORBID_EXTRA

_Class = TypeVar("_Class")
_Section = TypeVar("_Section", bound=RuleConfig)

#: Settings class -> the id of its rule (the field that holds it).
_FIELD_OF: dict[type[RuleConfig], str] = {entry.config: entry.id for entry in CATALOG}


def _one_section_per_rule(cls: type[_Class]) -> type[_Class]:
    """Give ``cls`` a field per catalog entry, in order, each defaulting to the rule's own
    defaults; then make it a frozen dataclass."""
    for entry in CATALOG:
        cls.__annotations__[entry.id] = entry.config
        setattr(cls, entry.id, field(default_factory=entry.config))
    return dataclass(frozen=True)(cls)


@_one_section_per_rule
class RulesConfig:
    """Every rule's section, one attribute per rule id (``[rules.<id>]`` in the TOML file).

    Build it with keywords by rule id (``RulesConfig(cushion=CushionConfig(warning=0.25))``);
    ``dataclasses.replace`` and ``dataclasses.fields`` work as on any dataclass.
    """

    __pydantic_config__: ClassVar[dict[str, Any]] = FORBID_EXTRA

    if TYPE_CHECKING:
        # What the decorator adds at run time, told to the type checker.
        __dataclass_fields__: ClassVar[dict[str, Field[Any]]]

        def __init__(self, **sections: RuleConfig) -> None: ...

        def __getattr__(self, rule: str) -> Any: ...

    def section(self, kind: type[_Section]) -> _Section:
        """The section whose settings class is ``kind``: ``config.section(CushionConfig)``."""
        try:
            name = _FIELD_OF[kind]
        except KeyError:
            raise KeyError(f"{kind.__name__} is not the settings class of a rule") from None
        value = getattr(self, name)
        if not isinstance(value, kind):
            raise TypeError(f"[rules.{name}] holds {type(value).__name__}, not {kind.__name__}")
        return value
