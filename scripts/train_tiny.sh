#!/usr/bin/env bash
# End to end on the embedded tiny model: set up, make the tiny model + dataset if missing, train, print the LoRA.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
. .venv/bin/activate
TINY=${TINY_DIR:-tiny_anima}
if [ ! -f "$TINY/train_args.toml" ]; then
  python tools/make_tiny_anima.py --output_dir "$TINY"
fi
python anima_train_network.py --config_file "$TINY/train_args.toml" --dataset_config "$TINY/dataset.toml"
ls -l "$TINY"/output/*.safetensors
