"""Speed: latency, throughput, memory and start-up, each compared as ratios measured in one run."""
