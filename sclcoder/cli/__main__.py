"""`python -m sclcoder.cli`: what launchers run (`torchrun ... -m sclcoder.cli train RECIPE`)."""

from sclcoder.cli import main

main()
