// What a cgroup-aware program sees of its limits: node's own answers (libuv
// reads /proc/self/cgroup, then memory.limit_in_bytes and
// memory.soft_limit_in_bytes below /sys/fs/cgroup/memory/<path>), and the
// CPU quota read the same way by path (what libuv >= 1.49 does for
// co-mounted "cpu,cpuacct"; node 20's libuv 1.46 only counts the affinity).
const fs = require("fs");
const os = require("os");

function cpuQuotaByPath() {
  for (const line of fs.readFileSync("/proc/self/cgroup", "utf8").split("\n")) {
    const [, controllers, path] = line.split(":");
    if (controllers === undefined || !controllers.split(",").includes("cpu")) continue;
    const dir = `/sys/fs/cgroup/cpu${path === "/" ? "" : path}`;
    const quota = parseInt(fs.readFileSync(`${dir}/cpu.cfs_quota_us`, "utf8"), 10);
    const period = parseInt(fs.readFileSync(`${dir}/cpu.cfs_period_us`, "utf8"), 10);
    return quota > 0 ? quota / period : null;
  }
  return null;
}

console.log(JSON.stringify({
  constrainedMemory: String(process.constrainedMemory()),
  availableParallelism: os.availableParallelism(),
  cpuQuota: cpuQuotaByPath(),
}));
