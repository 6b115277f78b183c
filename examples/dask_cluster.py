"""The squaring application of ``background_processes.py``, on a Dask cluster.

The same window and the same jobs (imported from
``examples/background_processes.py``, not copied); only the context
changes: ``DaskContext()`` starts an embedded ``LocalCluster`` of worker
processes on this machine, which it closes on ``close()``.  To use a cluster
that runs elsewhere, pass its scheduler's address instead:
``DaskContext("tcp://scheduler:8786")``; the workers must then be able to
import ``background_processes``.

Needs ``pip install 'offload[dask,traitsui,pyside6]'``.  Run it with
``python examples/dask_cluster.py``.
"""

from __future__ import annotations

from background_processes import SquaringHelper

from offload.api import DaskContext, TraitsExecutor


def main() -> None:
    context = DaskContext()
    traits_executor = TraitsExecutor(context=context)
    try:
        view = SquaringHelper(traits_executor=traits_executor)
        view.configure_traits()
    finally:
        traits_executor.shutdown()
        context.close()


if __name__ == "__main__":
    main()
