#!/usr/bin/env bash
# The study that chooses the loss hyper-parameters of the demo presets, on the validation split only.
#
#   scripts/tune_demo.sh [demo|cpu] [TRIALS] [eer|mindcf]   (defaults: demo, 20 trials per loss, eer)
#
# What it does, per demo preset (bench/presets/demo.toml, bench/presets/demo-cpu.toml), for the losses
# that preset's `bench demo` compares (demo: aam, aamsupcon; cpu: softmax, aam, supcon, aamsupcon):
#   1. generates the preset's synthetic corpus if missing (the same one `bench demo --preset P` uses);
#   2. runs one Optuna study per loss with `bench tune` (seeded TPE, median pruning, each trial a normal
#      training run with the preset's early stopping). The objective is the validation EER (or, with
#      OBJECTIVE=mindcf, the minDCF at p 0.01) on the held-out *training* speakers (dev/val_trials.lst)
#      of the best validated epoch by EER, the checkpoint `bench run` scores under early stopping. The
#      evaluation trials are never read while tuning;
#   3. prints each study's best parameters and the tables to put in the preset (that loss only), e.g.
#          [loss.per_loss.aam]
#          scale = 11.3
#          margin = 0.21
#
#          [optim.per_loss.aam]
#          lr = 0.0061
#
# Search spaces: the Adam learning rate (log 1e-3 to 2e-2) for every loss; AAM scale (log 4-32) and
# margin; SupCon temperature (log 0.03-0.3); AAM-SupCon all of these plus the AAM weight. softmax has
# no loss parameter (bias only), so only its learning rate is searched. Each trial trains under the
# preset's own schedule and plateau rule (demo: lr cut x0.2 twice at validation plateaus).
#
# Cost on 2 cores: demo, a trial is at most 1,200 steps (about 1.5 min; pruned trials less): 8 trials
# per loss took 20 min; cpu, a trial is at most 3,000 steps (about 5 min, measured in `bench demo
# --preset cpu`): TRIALS=12 takes about 4 hours there, less where trials are pruned.
set -euo pipefail

preset=${1:-demo}
trials=${2:-20}
objective=${3:-eer}
bench=${BENCH:-.venv/bin/bench}
case "$preset" in
  demo) config=demo; synth=(--preset demo --speakers 100); data=data/synth-demo100; losses=(aam aamsupcon) ;;
  cpu) config=demo-cpu; synth=(--preset full --speakers 300); data=data/synth-cpu300; losses=(softmax aam supcon aamsupcon) ;;
  *) echo "usage: $0 [demo|cpu] [TRIALS] [eer|mindcf]" >&2; exit 2 ;;
esac

$bench data synth "${synth[@]}" --out "$data"
suffix="" warmup=0
# its own study (and storage) per objective; minDCF(0.01) stays near 1 for every trial in the first
# epochs, where a median rule prunes by noise (it pruned 5 of 10 aam trials after 1-3 epochs)
[ "$objective" = eer ] || { suffix="-$objective"; warmup=8; }

lr="--param optim.lr=1e-3:2e-2:log"
declare -A space=(
  [softmax]="$lr"
  [aam]="--param scale=4:32:log --param margin=0.05:0.4 $lr"
  [supcon]="--param temperature=0.03:0.3:log $lr"
  [aamsupcon]="--param scale=4:32:log --param margin=0.05:0.4 --param temperature=0.03:0.3:log --param weight=0.25:4:log $lr"
)
for loss in "${losses[@]}"; do
  # shellcheck disable=SC2086  # the space is a list of options
  $bench tune --preset "$config" --loss "$loss" ${space[$loss]} --trials "$trials" \
    --study "$config-$loss$suffix" --seed 0 --pruner median --warmup-epochs "$warmup" --objective "$objective" --quiet
done
for loss in "${losses[@]}"; do
  echo "== $loss: put the best parameters under [loss.per_loss.$loss] in bench/presets/$config.toml"
  $bench tune --show "$config-$loss$suffix" --no-plots
done
