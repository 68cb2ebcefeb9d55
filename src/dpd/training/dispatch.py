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

from typing import TYPE_CHECKING, Any, Literal, get_args

if TYPE_CHECKING:
    from dpd.training.learner import Learner
    from dpd.training.parallel import RemoteLearner

#: the calls a trainer makes on a learner, by name (the learner interface)
LearnerCall = Literal["setup", "iterate", "distill_due", "peer_batch", "distill", "measure", "after_iteration",
                      "finish", "save", "state"]
LEARNER_CALLS: frozenset[str] = frozenset(get_args(LearnerCall))


class LocalLearner:
    """A :class:`Learner` in this process, called with its own random state."""

    def __init__(self, learner: Learner) -> None:
        self.learner = learner
        self.name = learner.name

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

    def __init__(self, handles: list[LocalLearner | RemoteLearner]) -> None:
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
        from dpd.training.parallel import RemoteLearner

        idx = list(range(len(self.handles))) if only is None else only
        calls = [(self.handles[i], args[k] if args else ()) for k, i in enumerate(idx)]
        for handle, a in calls:
            if isinstance(handle, RemoteLearner):
                handle.send(method, *a)  # the other processes start now ...
        local = {id(h): h.call(method, *a) for h, a in calls if isinstance(h, LocalLearner)}  # ... this one meanwhile
        return [h.recv() if isinstance(h, RemoteLearner) else local[id(h)] for h, _ in calls]

    def local(self) -> list[Learner]:
        """The learners as in-process objects (sequential mode)."""
        if not all(isinstance(h, LocalLearner) for h in self.handles):
            raise RuntimeError("in parallel mode student1 lives in its own process")
        return [h.learner for h in self.handles if isinstance(h, LocalLearner)]

    def close(self) -> None:
        for handle in self.handles:
            handle.close()
