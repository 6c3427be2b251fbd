"""Exceptions raised by neonlearn."""

__all__ = ["TrainingDivergedError"]


class TrainingDivergedError(ValueError, ArithmeticError):
    """The training cost became NaN or infinite."""
