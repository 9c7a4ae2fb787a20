# Databricks notebook source
# MAGIC %md
# MAGIC # Wait for a person's approval
# MAGIC Where the target requires approval (`approval: required` in deploy.yml), fails until the
# MAGIC validated version carries the tag `approval_<target>` = Approved, set in Catalog Explorer
# MAGIC or by `diabetes-mlops approve <target> <version> --reason "..."`, which also repairs this run.
# MAGIC Rejected: fails, and the version is never promoted.

# COMMAND ----------

dbutils.widgets.text("model_name", "diabetes", "Registered model")
dbutils.widgets.text("model_version", "", "Version to approve (required)")
dbutils.widgets.dropdown("registry", "workspace", ["workspace", "unity_catalog"], "Model registry")
dbutils.widgets.dropdown("approval", "none", ["required", "none"], "Approval")
dbutils.widgets.text("deploy_target", "", "Deploy target the approval is for")
dbutils.widgets.text("job_run_id", "", "This job run (what approve repairs)")

# COMMAND ----------

from diabetes_mlops.steps import approval, run_step

run_step(approval, dbutils)
