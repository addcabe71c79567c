"""The one base that gives every closable resource ``async with``."""

from __future__ import annotations

from abc import ABC, abstractmethod
from types import TracebackType

from typing_extensions import Self

__all__ = ["AsyncResource"]


class AsyncResource(ABC):
    """Something to ``aclose()``: ``async with`` returns it and closes it on the way out."""

    __slots__ = ()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    @abstractmethod
    async def aclose(self) -> None:
        """Release the resource. Idempotent."""
