"""The controllers that ``kubelite server`` runs, each a watch → compute → write loop over the API.

Layout: ``base`` holds what every controller shares (informers, a work queue of keys, workers);
each controller keeps its pure "what should exist" computation in a ``*_model`` module tested
without a cluster, and its controller module only watches, calls the model and writes.
``endpoints`` (core/v1 Endpoints for Services with a selector) and ``endpointslice``
(discovery.k8s.io/v1 EndpointSlices, plus mirroring of selector-less Services' Endpoints) share
``endpoints_model`` and ``endpointslice_model``; ``replicaset`` and ``deployment`` (rollouts over
ReplicaSets), ``daemonset`` (one pod per node), ``namespace`` (emptying a terminating namespace),
``garbagecollector`` (ownerReference cascades), ``nodeipam`` (a podCIDR per node), ``loadbalancer``
(LoadBalancer IPs from a pool) and ``repair`` (ClusterIP / NodePort allocation repair) complete the
set; ``events`` writes the core/v1 Events they report.
"""
