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

  function connect() {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const socket = new WebSocket(`${scheme}://${location.host}/ws/jobs/${jobId}/`);
    let finished = false;
    socket.onopen = () => {
      retryDelay = 1000;
      field("connection").textContent = "live updates: connected";
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
      setTimeout(connect, retryDelay);
      retryDelay = Math.min(retryDelay * 2, 15000);
    };
  }

  render(JSON.parse(document.getElementById("job-state").textContent));
  connect();
})();
