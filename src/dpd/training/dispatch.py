"""The one way a trainer calls its learners: in this process or in another, each call with the learner's own
random state swapped in.

SB3 draws from the global generators (minibatch order, action sampling) and its constructor reseeds them. With two
students in one process they would otherwise share one stream, so a student's rollouts would depend on its peer's
draws. :class:`LocalLearner` swaps the learner's own Python / NumPy / torch (CPU and CUDA) state in before a call
and out after it, so every student draws exactly what it would draw alone, and what it draws in its own process in
parallel mode (where the worker wraps its learner in a LocalLearner too). The swap lives here only: a
:class:`dpd.training.learner.Learner` refuses a call that does not come through a dispatcher.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from dpd.training.learner import LEARNER_CALLS, LearnerCall

if TYPE_CHECKING:
    from dpd.training.learner import Learner

__all__ = ["LEARNER_CALLS", "Dispatcher", "Handle", "LearnerCall", "LocalLearner"]


class Handle(Protocol):
    """A learner the trainer calls: ``send`` starts a call, ``recv`` returns its result. A remote learner starts
    working at ``send``; a local one works at ``recv`` (the dispatcher collects local results before remote ones,
    so this process works while the others do)."""

    name: str
    local: bool

    def send(self, method: LearnerCall, *args: Any) -> None: ...

    def recv(self) -> Any: ...

    def close(self) -> None: ...


class LocalLearner:
    """A :class:`Learner` in this process, called with its own random state."""

    local = True

    def __init__(self, learner: Learner) -> None:
        self.learner = learner
        self.name = learner.name
        self._pending: tuple[LearnerCall, tuple[Any, ...]] | None = None

    def send(self, method: LearnerCall, *args: Any) -> None:
        self._pending = (method, args)

    def recv(self) -> Any:
        assert self._pending is not None, "recv() without send()"
        method, args = self._pending
        self._pending = None
        return self.call(method, *args)

    def call(self, method: LearnerCall, *args: Any) -> Any:
        from dpd.state import rng_state, set_rng_state

        learner = self.learner
        outside = rng_state()
        set_rng_state(learner.random_state)
        learner.dispatched = True
        try:
            return getattr(learner, method)(*args)
        finally:
            learner.dispatched = False
            learner.random_state = rng_state()
            set_rng_state(outside)

    def close(self) -> None:
        self.learner.close()


class Dispatcher:
    """The learners of a run (local or remote) and the calls on them."""

    def __init__(self, handles: list[Handle]) -> None:
        self.handles = handles

    def __len__(self) -> int:
        return len(self.handles)

    def call(self, index: int, method: LearnerCall, *args: Any) -> Any:
        """``method(*args)`` on learner ``index``; waits for a remote one."""
        return self.all(method, [args], only=[index])[0]

    def all(self, method: LearnerCall, args: list[tuple[Any, ...]] | None = None,
            only: list[int] | None = None) -> list[Any]:
        """``method`` on the learners ``only`` (default: all), ``args[k]`` for the k-th of them: remote ones start
        first and run while this process does its own. Returns the results in the order of ``only``."""
        idx = list(range(len(self.handles))) if only is None else only
        calls = [(self.handles[i], args[k] if args else ()) for k, i in enumerate(idx)]
        for handle, a in calls:
            handle.send(method, *a)  # the other processes start now ...
        results = {id(h): h.recv() for h, _ in calls if h.local}  # ... while this one does its own part
        results.update({id(h): h.recv() for h, _ in calls if not h.local})
        return [results[id(h)] for h, _ in calls]

    def local(self) -> list[Learner]:
        """The learners as in-process objects (sequential mode)."""
        if not all(isinstance(h, LocalLearner) for h in self.handles):
            raise RuntimeError("in parallel mode student1 lives in its own process")
        return [h.learner for h in self.handles if isinstance(h, LocalLearner)]

    def close(self) -> None:
        for handle in self.handles:
            handle.close()
