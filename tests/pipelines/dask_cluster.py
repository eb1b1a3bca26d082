"""A 2-worker ``distributed.LocalCluster`` for the tests that run a job on Beam's Dask runner."""

from __future__ import annotations

import contextlib

DASK_RUNNER = "apache_beam.runners.dask.dask_runner.DaskRunner"


@contextlib.contextmanager
def dask_runner_flags(npartitions: int = 4):
    """Yield the Beam flags that run a pipeline on a fresh 2-worker cluster; clean up after the run.

    Two things of the driver process leak from one Dask run into the next, and both are reset here:
    - Beam's DaskRunner opens its own Client and never closes it; left open it keeps trying to reconnect
      (and logging) after the cluster is gone.
    - a Client sets ``dask.config["scheduler"] = "dask.distributed"`` in this process, and the Nanny hands
      this process's config to the workers it starts. Beam's runner computes side inputs with a nested
      ``compute()`` inside worker tasks, which then asks for a distributed Client the worker doesn't have
      ("Requested dask.distributed scheduler but no Client active"). So every cluster starts from a config
      without that key.
    """
    import dask
    import distributed
    from distributed.client import _global_clients

    dask.config.config.pop("scheduler", None)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        with distributed.Client(cluster) as client:
            try:
                yield [
                    f"--runner={DASK_RUNNER}",
                    f"--dask_client_address={client.scheduler.address}",
                    f"--dask_npartitions={npartitions}",
                ]
            finally:
                for other in list(_global_clients.values()):
                    if other is not client:
                        other.close()
    dask.config.config.pop("scheduler", None)
