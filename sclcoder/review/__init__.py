"""The coder's desk: `sclcoder review` serves predictions to a coder in the browser and appends every decision to
a corrections file (sclcoder.data.corrections), which a recipe's `corrections` source turns into training data."""
