#!/bin/bash
# Apply known re-implementation pitfalls to a temporary COPY of the checkout's source (the checkout is not
# touched) and check that the parity tests then fail. Usage (from the repository root):
#   bash test/models/run_source_mutants.sh
# Prints one line per mutant: "<name>: KILLED (...)" when its tests fail, "SURVIVED" when they pass.
# Slow parts: the proposer mutants run the full-size proposer fixture forward.
set -u
repo=$(cd "$(dirname "$0")/../.." && pwd)
shared=${GMOS_SHARED:-$repo/../shared}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp -r "$repo/gmos_core" "$repo/test" "$repo/pytest.ini" "$work/"
status=0
mutant() { # name file sed-expression pytest-args...
  local name=$1 file=$2 expr=$3; shift 3
  sed -i "$expr" "$work/$file"
  if cmp -s "$repo/$file" "$work/$file"; then echo "$name: NOT APPLIED (source changed?)"; status=1; return; fi
  local out
  out=$(cd "$work" && GMOS_SHARED=$shared PYTHONPATH=$work python3 -m pytest "$@" -q -p no:cacheprovider 2>&1 | tail -1)
  if [[ $out == *failed* || $out == *error* ]]; then echo "$name: KILLED ($out)"; else echo "$name: SURVIVED ($out)"; status=1; fi
  cp "$repo/$file" "$work/$file"
}
mutant dinov2_layernorm_eps_1e-5 gmos_core/models/dinov2.py 's/norm_eps: float = 1e-6/norm_eps: float = 1e-5/' test/models/test_pi3_tiny.py
mutant pi3_qk_norm_eps_1e-6 gmos_core/models/pi3_encoder.py 's/qk_norm_eps=1e-5/qk_norm_eps=1e-6/' test/models/test_pi3_tiny.py
mutant pi3_decoder_layernorm_eps_1e-5 gmos_core/models/pi3_encoder.py 's/norm_eps=1e-6, init_values=0.01/norm_eps=1e-5, init_values=0.01/' test/models/test_pi3_tiny.py
mutant pos_embed_bilinear gmos_core/models/dinov2.py 's/mode="bicubic", antialias=True/mode="bilinear", antialias=True/' test/models/test_pi3_tiny.py
mutant pos_embed_no_antialias gmos_core/models/dinov2.py 's/mode="bicubic", antialias=True/mode="bicubic", antialias=False/' test/models/test_pi3_tiny.py
mutant projector_layernorm_eps_1e-5 gmos_core/models/layers/projector.py 's/eps=1e-6/eps=1e-5/' test/models/test_proposer_full.py -k intermediates
mutant head_rope_base_100 gmos_core/models/heads_common.py 's/HEAD_ROPE_BASE = 100.0 \* 36 \/ 64/HEAD_ROPE_BASE = 100.0/' test/models/test_proposer_full.py -k trunk_check
mutant pi3_grid_resize_bicubic gmos_core/models/heads_common.py 's/mode="bilinear", align_corners=False/mode="bicubic", align_corners=False/' test/models/test_proposer_full.py -k trunk_check
mutant hard_max_last_max gmos_core/postprocess.py 's/^    winner = mask.argmax(axis=0)$/    winner = mask.shape[0] - 1 - mask[::-1].argmax(axis=0)/' test/models/test_pre_post_utils.py -k get_numpy_hard_max
mutant hard_max_ge_threshold gmos_core/postprocess.py 's/^    keep = mask.max(axis=0) > threshold$/    keep = mask.max(axis=0) >= threshold/' test/models/test_pre_post_utils.py -k get_numpy_hard_max
exit $status
