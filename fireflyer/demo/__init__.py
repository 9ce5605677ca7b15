"""The main job: a cluster on this machine trains a model from fs3 with HFReduce, gets preempted, resumes.

``haictl demo`` runs it end to end (``fireflyer.demo.run``); ``train`` is the program every rank
of the training job runs, ``probe`` the short high-priority job that preempts it.
"""
