"""Expected CloudTrail Insights transitions for per-minute count series: a straightforward
re-implementation of docs/insights.md, independent of orgtrail's code (the golden tests compare).

stdin: {"params": {baseline_minutes, sigma_factor, mean_factor, min_count, end_after_minutes},
        "series": {name: [count per minute, ...]}}
stdout: {name: [{"state": "Start", "minute", "baseline_average", "insight_average"} |
                {"state": "End", "start", "duration", "baseline_average", "insight_average"}]}
"""
import json
import math
import sys


def transitions(params, counts):
    width = params["baseline_minutes"]
    # prefix[i] = sum of counts[:i]; squares likewise (exact integers).
    prefix, squares = [0], [0]
    for count in counts:
        prefix.append(prefix[-1] + count)
        squares.append(squares[-1] + count * count)
    found = []
    insight = None  # the open insight, a dict
    for minute in range(len(counts)):
        count = counts[minute]
        if insight is None:
            if minute < width:
                continue  # no full baseline yet
            total = prefix[minute] - prefix[minute - width]
            total_squares = squares[minute] - squares[minute - width]
            mean = float(total) / float(width)
            sigma = math.sqrt(float(max(width * total_squares - total * total, 0))) / float(width)
            threshold = max(mean + params["sigma_factor"] * sigma, mean * params["mean_factor"],
                            float(params["min_count"]))
            if float(count) > threshold:
                insight = {"start": minute, "mean": mean, "threshold": threshold,
                           "last": minute, "quiet": 0}
                found.append({"state": "Start", "minute": minute, "baseline_average": mean,
                              "insight_average": float(count)})
            continue
        if float(count) > insight["threshold"]:
            insight["last"] = minute
            insight["quiet"] = 0
            continue
        insight["quiet"] += 1
        if insight["quiet"] >= max(params["end_after_minutes"], 1):
            start, last = insight["start"], insight["last"]
            duration = last - start + 1
            total = sum(counts[start:last + 1])
            found.append({"state": "End", "start": start, "duration": duration,
                          "baseline_average": insight["mean"],
                          "insight_average": float(total) / float(duration)})
            insight = None
    return found


def main():
    request = json.load(sys.stdin)
    params = request["params"]
    json.dump({name: transitions(params, counts) for name, counts in request["series"].items()}, sys.stdout)


if __name__ == "__main__":
    main()
