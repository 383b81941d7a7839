"""The exceptions genvi raises. Each message names the address, distribution or shape."""


class GenviError(Exception):
    """Base class of genvi's errors."""


class AddressError(GenviError, KeyError):
    """An address is missing, duplicated, unknown or malformed."""

    def __str__(self) -> str:  # KeyError quotes its message; show it plainly
        return str(self.args[0]) if self.args else ""


class ChoiceTypeError(GenviError, TypeError):
    """A choice or constraint has the wrong shape or dtype."""


class StrategyError(GenviError, ValueError):
    """A gradient strategy that cannot apply to a distribution or a program."""


class SupportError(GenviError, ValueError):
    """A distribution's parameters lie outside their support (with validation on)."""


class ModelingError(GenviError, RuntimeError):
    """A modeling-language construct used where it cannot be."""
