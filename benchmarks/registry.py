"""Which function builds each (framework, workload) of ``workloads.WORKLOADS``: the
one place that knows all three workload modules (they import from ``workloads``,
never the other way round)."""
import workloads
import workloads_infer
import workloads_train

__all__ = ["builder"]


def builder(framework, workload):
    """The builder ``<framework>_<workload>`` (called with ``quick``, it returns a
    ``workloads.Unit``)."""
    name = "%s_%s" % (framework, workload)
    for module in (workloads_infer, workloads_train, workloads):
        if hasattr(module, name):
            return getattr(module, name)
    raise KeyError("no builder %s in the workload modules" % name)
