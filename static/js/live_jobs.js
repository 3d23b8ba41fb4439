// Live progress of the running jobs shown on a page (the home page's loop cards): each
// [data-live-job] element listens to its job's WebSocket, the same feed as the job page.
(function () {
  const scheme = location.protocol === "https:" ? "wss" : "ws";

  function follow(element) {
    const jobId = element.dataset.liveJob;
    const part = (name) => element.querySelector(`[data-live="${name}"]`);
    let retryDelay = 1000;
    let finished = false;

    function render(job) {
      const skipped = job.result && job.result.skipped;
      const status = skipped ? "skipped" : job.status;
      part("status").textContent = status;
      part("status").className = `status ${status}`;
      part("bar").setAttribute("aria-valuenow", job.progress);
      part("bar").querySelector(".bar").style.width = `${job.progress}%`;
      part("progress").textContent = `${job.progress}%`;
      part("message").textContent = job.message;
      finished = !job.is_active;
    }

    function connect() {
      const socket = new WebSocket(`${scheme}://${location.host}/ws/jobs/${jobId}/`);
      socket.onopen = () => (retryDelay = 1000);
      socket.onmessage = (event) => {
        const data = JSON.parse(event.data);
        if (data.event === "state") render(data.job);
      };
      socket.onclose = (event) => {
        if (finished || event.code === 4403) return;
        setTimeout(connect, retryDelay);
        retryDelay = Math.min(retryDelay * 2, 15000);
      };
    }
    connect();
  }

  document.querySelectorAll("[data-live-job]").forEach(follow);
})();
