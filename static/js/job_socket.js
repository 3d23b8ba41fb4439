// followJobState(jobId, render): calls render(job) with each state the job's WebSocket sends (the
// first one on every (re)connect), reconnects with a growing pause until the job has finished,
// and gives up only when the server refuses the viewer (4403). Shared by the pages that show a
// job's live state; the job page itself (job_progress.js) also follows the log.
window.followJobState = function (jobId, render) {
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  let retryDelay = 1000;
  let finished = false;
  function connect() {
    const socket = new WebSocket(`${scheme}://${location.host}/ws/jobs/${jobId}/`);
    socket.onopen = () => (retryDelay = 1000);
    socket.onmessage = (event) => {
      const data = JSON.parse(event.data);
      if (data.event !== "state") return;
      render(data.job);
      finished = !data.job.is_active;
      if (finished) socket.close();
    };
    socket.onclose = (event) => {
      if (finished || event.code === 4403) return;
      setTimeout(connect, retryDelay);
      retryDelay = Math.min(retryDelay * 2, 15000);
    };
  }
  connect();
};
