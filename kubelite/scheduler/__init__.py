"""The scheduler: binds each pending pod to a node, as kube-scheduler's default profile would.

Layout (one module per concern; the first two are pure and tested without a cluster):

    predicates.py   NodeInfo / PodSpecInfo (API objects as frozen types), the filter plugins
                    (NodeUnschedulable, NodeName, TaintToleration, NodeAffinity, NodePorts,
                    pod-count NodeResourcesFit), ``filter_nodes`` and the FailedScheduling text
    scoring.py      the score plugins (taints, spreading, preferred affinity, least pods),
                    ``score_nodes`` and ``schedule`` -> ``Decision``

The loop that watches pods and nodes and writes Bindings and events sits on top of these and
only turns a ``Decision`` into API calls. See README.md for the design and its trade-offs.
"""
