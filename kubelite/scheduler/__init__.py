"""The scheduler: binds each pending pod to a node, as kube-scheduler's default profile would.

Layout (one module per concern; the first two are pure and tested without a cluster):

    predicates.py   NodeInfo / PodSpecInfo (API objects as frozen types), the filter plugins
                    (NodeUnschedulable, NodeName, TaintToleration, NodeAffinity, NodePorts,
                    pod-count NodeResourcesFit), ``filter_nodes`` and the FailedScheduling text
    scoring.py      the score plugins (taints, spreading, preferred affinity, least pods),
                    ``score_nodes`` and ``schedule`` -> ``Decision``

    controller.py   SchedulerController: watches pods and nodes, turns each ``Decision`` into a
                    Binding (pods/binding) or a FailedScheduling event and PodScheduled=False

See README.md for the design and its trade-offs.
"""
