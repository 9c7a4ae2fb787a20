"""Shipping the project to a Databricks workspace: targets, wheels, uploads, jobs, remote runs."""
