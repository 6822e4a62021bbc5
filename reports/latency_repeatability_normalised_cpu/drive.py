"""Finish the repeatability run of `explore bench repeatability --loads compute,bandwidth` whose idle study
(`quiet`) completed: run only the bandwidth-loaded study (same study options), then compare and render."""
import os, signal, subprocess, sys, time
from pathlib import Path
from explore.analysis.bench import repeatability as rep
from explore.report.bench import render_repeatability, write_repeatability
from explore.search import open_study, trials_frame

runs = Path(sys.argv[1]); out = Path(sys.argv[2])
args = ["--trials", "6", "--epochs", "0.5", "--max-train", "1000", "--max-val", "200", "--train-threads", "1",
        "--seed", "0", "--sampler", "random"]
quiet = trials_frame(open_study(str(runs / "quiet")))
load = subprocess.Popen(rep.load_command("bandwidth", 2), start_new_session=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
try:
    time.sleep(2)
    loaded, seconds = rep._study(runs, "loaded_bandwidth", args)
finally:
    os.killpg(load.pid, signal.SIGKILL)
    load.wait()
result = rep.Repeatability({"bandwidth": rep.compare(quiet, loaded)}, 363.9, {"bandwidth": seconds}, 2)
command = ("explore bench repeatability --loads compute,bandwidth --load-threads 2 -- --trials 6 --epochs 0.5 "
           "--max-train 1000 --max-val 200 --train-threads 1 --seed 0 (idle run; the compute run stopped, "
           "the bandwidth run by drive.py)")
text = render_repeatability(result, command)
print(text)
write_repeatability(text, result, out)
