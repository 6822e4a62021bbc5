"""Wall time of one stand-alone proxy trial of the cga supernet's largest subnets (the supernet run's
data and epochs: fashion_mnist, 1000 training images, 3 epochs, batch 128), for the cost target."""
import json, time
from explore.evaluate import evaluate_candidate
from explore.space import load_space
from explore.supernet import Supernet
from explore.supernet.train import SupernetSettings, load_run_data
from explore.train import ProxyRecipe

settings = SupernetSettings(space="cga", max_train=1000, max_val=500, epochs=3)
data = load_run_data(settings)
supernet = Supernet(load_space("cga"), in_chans=data.in_chans, num_classes=data.num_classes)
rows = []
for group in supernet.groups[:1]:  # sandwich-bn: the paper's norm
    config = supernet.largest(group)
    started = time.perf_counter()
    proxy = evaluate_candidate(config, seed=0, count=False, data=data, recipe=ProxyRecipe(epochs=3, batch_size=128)).proxy
    rows.append({"group": group, "summary": config.summary(), "train_seconds": proxy.train_seconds,
                 "wall_seconds": time.perf_counter() - started, "top1": proxy.top1})
print(json.dumps(rows, indent=1))
