# Databricks notebook source
# MAGIC %md
# MAGIC # Train the diabetes model
# MAGIC Reads the training data (CSV, Parquet, Delta or a table) and validates it, picks Ridge's
# MAGIC alpha by cross-validation, logs the run to MLflow and registers a new model version with
# MAGIC alias `challenger`.
# MAGIC Publishes task value `model_version` for the validate and promote tasks.

# COMMAND ----------

dbutils.widgets.text("data_path", "/Volumes/main/diabetes/data/data_raw.csv", "Training data")
dbutils.widgets.dropdown("data_format", "csv", ["csv", "parquet", "delta", "table"], "Format")
dbutils.widgets.text("max_training_rows", "5000000", "Most rows fitted on the driver")
dbutils.widgets.text("model_name", "diabetes", "Registered model (catalog.schema.model for UC)")
dbutils.widgets.text("experiment_name", "/Shared/diabetes", "MLflow experiment")
dbutils.widgets.dropdown("registry", "workspace", ["workspace", "unity_catalog"], "Model registry")
dbutils.widgets.text("alphas", "0.01,0.03,0.1,0.3,1,3,10,30,100", "Ridge alpha grid")
dbutils.widgets.text("test_size", "0.2", "Holdout fraction")
dbutils.widgets.text("cv_folds", "5", "Cross-validation folds")
dbutils.widgets.text("seed", "42", "Random seed")

# COMMAND ----------

from diabetes_mlops.steps import run_step, train

run_step(train, dbutils)
