"""``bench-torchrun``: torchrun itself, with a user error of the workers shown as that one line.

It takes torchrun's arguments unchanged and runs :func:`torch.distributed.run.main` (the same
elastic launcher, nothing home-made). torchrun ends any failed job with a Python traceback of its
own; here a worker that stopped on bad input (exit code 2, its ``error:`` line already printed by
rank 0) ends the launcher with that exit code and no traceback. Other failures (a crash, a
signal) keep torchrun's full report.

Example:
    bench-torchrun --nproc_per_node 4 -m bench run --preset reference --losses aamsupcon
"""

from __future__ import annotations

import sys

USER_ERROR = 2  # the exit code of bench.commands.common.fail for bad input


def main(argv: list[str] | None = None) -> None:
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import main as torchrun

    try:
        torchrun(argv if argv is not None else sys.argv[1:])
    except ChildFailedError as e:
        _, first = e.get_first_failure()
        if first.exitcode == USER_ERROR:
            raise SystemExit(USER_ERROR) from None
        raise


if __name__ == "__main__":
    main()
