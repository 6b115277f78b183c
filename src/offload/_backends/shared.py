"""``offload.api.shared_array``, without importing NumPy until it is called."""

from __future__ import annotations

from typing import Any


def shared_array(shape: Any, dtype: Any = float) -> Any:
    """A zeroed NumPy array of ``shape`` and ``dtype`` in shared memory.

    Sent to a worker process of a ``MultiprocessingContext`` (as an
    argument, or by a task as its result, a progress message or an
    iteration item), it is not copied: the receiver maps the same memory.
    Both sides see each other's writes, so do not change it while a task
    reads it.  Keep a reference to it until the task that receives it is
    done.  Any thread, in the application or in a task.  Needs NumPy.

    Parameters
    ----------
    shape : int or tuple of int
        Shape of the array.
    dtype : data-type, optional
        NumPy data type, ``float`` (float64) by default.

    Returns
    -------
    numpy.ndarray
        Of a subclass that pickles by reference to its memory.  Views and
        slices of it are shared too; an array computed from it (``a + 1``)
        is an ordinary one.

    Raises
    ------
    ValueError
        If ``shape`` is not a non-negative int or a tuple of them.
    ImportError
        If NumPy is not installed.

    Examples
    --------
    >>> image = shared_array((2048, 2048), "uint16")  # doctest: +SKIP
    >>> camera.read_into(image)  # doctest: +SKIP
    >>> future = submit_call(executor, analyse, image)  # doctest: +SKIP
    """
    try:
        from offload._backends.process.shared_array import make_shared_array
    except ImportError as error:
        raise ImportError(
            f"shared_array needs NumPy: pip install numpy ({error})"
        ) from error
    return make_shared_array(shape, dtype)
