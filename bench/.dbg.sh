python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl 2>&1 | tail -2
export PYTHONPATH=/tmp/site:$PWD SD_TRAINPLAN_CACHE=/tmp/stpc HF_HUB_OFFLINE=1 NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
python -c "from sd_trainplan.train.sample_data import make_shapes; make_shapes('/tmp/d', size=512, per_kind=1)"
L="accelerate launch --multi_gpu --num_processes 2 --num_machines 1 --mixed_precision no --dynamo_backend no -m sd_trainplan train --model random-sd1 --data /tmp/d --method dreambooth --batch-size 4 --log-every 4 --resolution 512 --no-noise-scale --keep-last 1"
timeout 200 $L --output /tmp/o1 --steps 8 > /tmp/l1 2>&1; echo rc=$?; grep -n "Traceback" /tmp/l1 | head -3; awk '/Traceback/{f=1} f{print; n++} n>45{exit}' /tmp/l1; grep -i "graph\|error" /tmp/l1 | grep -v "^ " | head -20
printf 'cuda_graphs = false\n' > /tmp/e.toml
timeout 200 $L --config /tmp/e.toml --output /tmp/o2 --steps 8 > /tmp/l2 2>&1; echo eager rc=$?; awk '/Traceback/{f=1} f{print; n++} n>30{exit}' /tmp/l2; tail -3 /tmp/l2
