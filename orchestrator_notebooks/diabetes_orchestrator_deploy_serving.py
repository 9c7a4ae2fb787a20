# Databricks notebook source
# MAGIC %md
# MAGIC # Serve the champion
# MAGIC Makes Model Serving endpoint `serving_endpoint` serve `models:/<model_name>@champion`:
# MAGIC created with the first champion; a new one served beside the current version with
# MAGIC `canary_percent` of the traffic, smoke-tested through the endpoint, then given 100 %.
# MAGIC Any failure rolls the endpoint back and tags the version with the reason.
# MAGIC Does nothing when `promoted` is false or `serving_endpoint` is empty (no serving here).

# COMMAND ----------

dbutils.widgets.text("model_name", "diabetes", "Registered model")
dbutils.widgets.dropdown("registry", "workspace", ["workspace", "unity_catalog"], "Model registry")
dbutils.widgets.dropdown("promoted", "true", ["true", "false"], "Did promote move the champion")
dbutils.widgets.text("serving_endpoint", "", "Serving endpoint (empty: this target serves none)")
dbutils.widgets.text("canary_percent", "10", "Canary share of traffic, %")
dbutils.widgets.dropdown("workload_size", "Small", ["Small", "Medium", "Large"], "Workload size")
dbutils.widgets.text("scale_to_zero", "true", "Scale to zero when idle (true/false)")
dbutils.widgets.text("inference_table", "", "Inference tables catalog.schema.prefix (empty: none)")
dbutils.widgets.text("serving_timeout_seconds", "1200", "Rollout deadline (60-2400), s")
dbutils.widgets.text("deploy_target", "", "deploy.yml target (set by the deploy)")

# COMMAND ----------

from diabetes_mlops.steps import deploy_serving, run_step

run_step(deploy_serving, dbutils)
