"""Stage 5, evaluation: code and evidence metrics, faithfulness, reports and the HTML audit view. Imports every
earlier stage, none later."""
