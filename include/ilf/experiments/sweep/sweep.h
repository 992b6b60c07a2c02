// Config-driven ablation sweeps: a sweep file (JSON) names a base run config, fixed overrides, axes of
// overrides (grid axes multiply, zip axes advance several keys together), the stages each point runs
// (train, sample, eval) and the metrics to collect. This header parses and validates sweep files,
// expands them into points, runs the stages of a point as child processes with completion markers
// (so an interrupted sweep resumes where it stopped), writes Slurm job-array scripts and collects
// every point's metrics into a table.
//
// Sweep file (all keys are read through ConfigReader, so unknown keys are errors):
//   {
//     "name": "fashion_mnist_loop_location",            // default: the file name without .json
//     "description": "Table 3: loop location and size",
//     "base_config": "configs/fashion_mnist.json",     // relative to the working directory or the sweep file
//     "output": "runs/sweeps/fashion_mnist_loop_location",  // default runs/sweeps/<name>
//     "set": {"sampling.method": "ilf", "sampling.steps": 12},   // overrides of every point
//     "axes": [
//       {"key": "ilf.t_post", "values": ["none", "rescale"], "train": false},
//       {"zip": {"ilf.loop_begin": [0, 4], "ilf.loop_end": [2, 6]}}
//     ],
//     "stages": ["train", "sample", "eval"],
//     "metrics": ["fid", "class_accuracy", "block_forwards", "seconds_per_image", "train.loss"],
//     "eval_num_samples": 1000,
//     "args": {"eval": ["--device", "cuda"]},            // extra arguments of the default stage commands
//     "commands": {"eval": ["sh", "-c", "..."]},         // replaces a stage's command (tests, custom tools)
//     "slurm": {"partition": "gpu", "time": "04:00:00", "gpus_per_task": 1, ...}
//   }
// Axes combine as a grid (the first axis varies slowest). An axis marked "train": false does not
// change training: points that differ only in such axes share one training run.
//
// Output layout under the output folder:
//   train/tNNN_<training overrides>/   ilf_train's --out, plus done_train.json
//   pNNN_<axis values>/                sample.png, metrics.json, logs, done_sample.json, done_eval.json
//   results.csv, results.md            from collect
// A stage runs only when its marker done_<stage>.json is missing; markers are written atomically after
// the stage succeeded and record the overrides, so a folder left by other settings is an error.
//
// The parts: spec.h (sweep files, points), runner.h (folders, markers, running stages, signals),
// slurm.h (job-array scripts) and collect.h (plan and results tables). Including this header gives all.
#pragma once
#include "ilf/experiments/sweep/collect.h"
#include "ilf/experiments/sweep/runner.h"
#include "ilf/experiments/sweep/slurm.h"
#include "ilf/experiments/sweep/spec.h"
