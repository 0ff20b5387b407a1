"""Bulk submission through job arrays: which jobs of one ``job_submission`` go together, and the
one script that carries each task's own job script.

A polled backend that has arrays says what jobs must share to go in one array
(:meth:`~soma_schedulers.polled.PolledScheduler.array_key`: queue, native specification,
parallel settings, hold...), how many tasks one array may hold
(:meth:`~soma_schedulers.polled.PolledScheduler.max_array_size`), and submits one array
(:meth:`~soma_schedulers.polled.PolledScheduler.submit_array`). :func:`plan` groups the jobs;
:func:`array_script` writes the array's script: a ``case`` on the task index whose branches are
the tasks' own scripts (each opens its own files, changes directory and runs its own argv with
its own environment), so every job keeps its argv, env, paths and stdin byte for byte.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass

from .job import Job
from .scripts import LAUNCH_ERROR_EXIT

__all__ = ["Planned", "array_script", "chunk_sizes", "plan"]


@dataclass
class Planned:
    """The jobs of one ``job_submission`` call (by their position in the call): the arrays to
    submit (each at most the DRMS's size, at least the minimum group size) and the jobs to
    submit one by one."""

    arrays: list[list[tuple[int, Job]]]
    singles: list[tuple[int, Job]]


def plan(jobs: Sequence[tuple[int, Job]], key_of: Callable[[Job], Hashable | None], min_size: int,
         max_size: Callable[[], int]) -> Planned:
    """Group ``jobs`` by ``key_of`` (None: never in an array), in their order, into arrays of at most
    ``max_size()`` tasks (asked only when a group is large enough; 0: no arrays); a group (or a last
    chunk) smaller than ``min_size`` is submitted one by one."""
    groups: dict[Hashable, list[tuple[int, Job]]] = {}
    singles: list[tuple[int, Job]] = []
    for item in jobs if len(jobs) >= min_size else ():
        key = key_of(item[1])
        (singles if key is None else groups.setdefault(key, [])).append(item)
    large = [members for members in groups.values() if len(members) >= min_size]
    limit = max_size() if large else 0
    if limit < 1:
        return Planned([], list(jobs) if len(jobs) < min_size else sorted(
            [*singles, *(item for members in groups.values() for item in members)], key=lambda item: item[0]))
    arrays: list[list[tuple[int, Job]]] = []
    for members in groups.values():
        for start in range(0, len(members), limit):
            chunk = members[start:start + limit]
            if len(chunk) >= min_size:
                arrays.append(chunk)
            else:
                singles.extend(chunk)
    singles.sort(key=lambda item: item[0])
    return Planned(arrays, singles)


def chunk_sizes(sizes: Sequence[int], limit: int) -> list[int]:
    """How many consecutive items go in each chunk so that a chunk's ``sizes`` (bytes of each task's
    part of an array script) add up to at most ``limit``; an item larger than ``limit`` alone."""
    chunks: list[int] = []
    total = 0
    for size in sizes:
        if not chunks or total + size > limit:
            chunks.append(0)
            total = 0
        chunks[-1] += 1
        total += size
    return chunks


def _common_head(bodies: Sequence[list[str]]) -> int:
    """How many first lines every body shares that are whole commands (each line with balanced
    quotes: a line inside a multi-line quoted word ends the run), so they can run once, first."""
    count = 0
    for lines in zip(*bodies, strict=False):
        line = lines[0]
        if any(other != line for other in lines) or line.count("'") % 2 or line.count('"') % 2:
            break
        if line.endswith("\\") or line.startswith("export "):  # a continued line; job data from here on
            break
        count += 1
    return count


def array_script(scripts: Sequence[str], index: str, first: int = 0, directives: Sequence[str] = ()) -> str:
    """One ``/bin/sh`` script for an array whose task ``first + n`` runs ``scripts[n]`` (each a
    complete job script of :func:`soma_schedulers.scripts.build_script`, written without
    directives). ``index`` is the shell expression of the task's index (``$SLURM_ARRAY_TASK_ID``);
    ``directives`` (``#SBATCH``/``#PBS`` lines) come first. The lines every task script begins with
    (``soma_cr``, ``soma_fail``: the same commands, run first anyway) are written once, before the
    ``case``. An index with no task exits 127."""
    bodies = [(script.split("\n", 1)[1] if script.startswith("#!") else script).rstrip("\n").split("\n")
              for script in scripts]
    head = _common_head(bodies) if len(bodies) > 1 else 0
    lines = ["#!/bin/sh", *directives, *(bodies[0][:head] if bodies else []), f'case "{index}" in']
    for n, body in enumerate(bodies):
        lines += [f"{first + n})", *body[head:], ";;"]
    lines += [f"*) printf 'soma_schedulers: no job for array index %s\\n' \"{index}\" >&2; "
              f"exit {LAUNCH_ERROR_EXIT};;", "esac", ""]
    return "\n".join(lines)
