// Keeps a job page live: the server rendered the current state; the WebSocket only updates it.
(function () {
  const root = document.getElementById("job");
  if (!root) return;
  const jobId = root.dataset.jobId;
  const field = (name) => root.querySelector(`[data-field="${name}"]`);
  let retryDelay = 1000;

  function render(job) {
    const status = field("status");
    const shown = job.result && job.result.skipped ? "skipped" : job.status;
    status.textContent = shown;
    status.className = `status ${shown}`;
    const bar = root.querySelector(".progress");
    bar.setAttribute("aria-valuenow", job.progress);
    bar.querySelector(".bar").style.width = `${job.progress}%`;
    field("progress").textContent = `${job.progress}%`;
    field("message").textContent = job.message;
    if (job.result && Object.keys(job.result).length) {
      field("result").textContent = JSON.stringify(job.result, null, 2);
    }
    const chart = field("chart");
    if (chart && job.chart && job.chart.length && window.drawLineChart) {
      chart.hidden = false;
      window.drawLineChart(chart.querySelector(".plot"), job.chart, "step", ["loss"]);
    }
    const cancel = field("cancel-form");
    if (cancel) cancel.hidden = !job.is_active || job.cancel_requested;
  }

  function appendLog(line) {
    const log = field("log");
    log.textContent += line + "\n";
    log.scrollTop = log.scrollHeight;
  }

  // The database is the truth; broadcasts are best-effort. Whenever the socket (re)connects or
  // drops, the page re-reads the job (state and whole log), so nothing sent meanwhile is missed.
  let refreshing = null;
  function refresh() {
    if (refreshing) return refreshing;
    refreshing = fetch(`/jobs/${jobId}/state/`, { headers: { Accept: "application/json" } })
      .then((response) => (response.ok ? response.json() : null))
      .then((job) => {
        if (!job) return;
        render(job);
        const log = field("log");
        if (typeof job.log === "string" && log.textContent !== job.log) {
          log.textContent = job.log;
          log.scrollTop = log.scrollHeight;
        }
      })
      .catch(() => {})
      .finally(() => {
        refreshing = null;
      });
    return refreshing;
  }

  function connect() {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const socket = new WebSocket(`${scheme}://${location.host}/ws/jobs/${jobId}/`);
    let finished = false;
    socket.onopen = () => {
      retryDelay = 1000;
      field("connection").textContent = "live updates: connected";
      refresh(); // (re)connected: catch up on anything sent while the socket was away
    };
    socket.onmessage = (event) => {
      const data = JSON.parse(event.data);
      if (data.event === "state") {
        render(data.job);
        finished = !data.job.is_active;
      } else if (data.event === "log") {
        appendLog(data.line);
      }
    };
    socket.onclose = (event) => {
      if (event.code === 4403) {
        field("connection").textContent = "live updates: not allowed";
        return;
      }
      if (finished) {
        field("connection").textContent = "live updates: job finished";
        return;
      }
      field("connection").textContent = "live updates: reconnecting…";
      refresh().then(() => {
        const state = field("status").textContent;
        if (state === "queued" || state === "running") {
          setTimeout(connect, retryDelay);
        } else {
          field("connection").textContent = "live updates: job finished";
        }
      });
      retryDelay = Math.min(retryDelay * 2, 15000);
    };
  }

  render(JSON.parse(document.getElementById("job-state").textContent));
  connect();
})();
