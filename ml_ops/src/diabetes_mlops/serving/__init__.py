"""Model serving: endpoint names, the logged model that checks requests, and the rollout that
runs inside the deploy_serving job task.
"""
