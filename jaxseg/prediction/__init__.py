"""`--mode predict`: the images `--input` names, and their masks and overlays."""
