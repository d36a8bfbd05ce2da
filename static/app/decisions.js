// A live decision feed (the Decisions page's, the overview's ticker): the edge server's WebSocket with a one-use ticket, resumed
// after the last cursor received (exact, commit order) with the last id shown as its fallback (the first connection, or a cursor
// older than the server's resume log); rows from the <template id="decision-row">.
(function () {
  var body = document.querySelector("[data-feed]"), state = document.querySelector("[data-feed-state]");
  var lastId = parseInt(body.dataset.lastId || "0", 10), lastCursor = "", ticket = body.dataset.ticket, tpl = document.getElementById("decision-row");
  function row(d) {
    var tr = tpl.content.firstElementChild.cloneNode(true), cells = tr.children;
    var a = cells[0].querySelector("a"); a.href = (body.dataset.detailBase || "") + d.id + "/"; a.textContent = d.id;
    cells[1].textContent = d.symbol + " " + d.timeframe + " " + (d.ts || "").slice(0, 16).replace("T", " ");
    var badge = cells[2].querySelector(".badge"); badge.textContent = d.action;
    if (d.action === "BUY") badge.classList.add("badge-ok"); if (d.action === "SELL") badge.classList.add("badge-bad");
    cells[3].textContent = (d.confidence * 100).toFixed(1) + " %";
    cells[4].textContent = d.model_version || "—";
    tr.setAttribute("data-decision", d.id);
    return tr;
  }
  function connect() {
    var ws = new WebSocket(body.dataset.wsUrl + "?ticket=" + encodeURIComponent(ticket) + "&after=" + lastId +
      (lastCursor ? "&cursor=" + encodeURIComponent(lastCursor) : ""));
    ws.onopen = function () { state.textContent = "live"; state.classList.add("badge-ok"); };
    ws.onmessage = function (e) {
      var m = JSON.parse(e.data);
      if (m.type !== "decision") return;
      var empty = body.querySelector("[data-empty]"); if (empty) empty.remove();
      body.insertBefore(row(m.data), body.firstChild);
      lastId = Math.max(lastId, m.id);
      if (m.cursor) lastCursor = m.cursor;
      while (body.children.length > parseInt(body.dataset.max || "200", 10)) body.removeChild(body.lastChild);
    };
    ws.onclose = function () {
      state.textContent = "reconnecting…"; state.classList.remove("badge-ok");
      setTimeout(function () {
        fetch(body.dataset.ticketUrl, {credentials: "same-origin"}).then(function (r) { return r.json(); })
          .then(function (j) { ticket = j.ticket; connect(); }).catch(function () { setTimeout(connect, 3000); });
      }, 1000);
    };
  }
  connect();
})();
