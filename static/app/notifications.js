// The notification bell in the header: the member's ws/notifications/ socket (daphne), opened with the
// one-use ticket the page carries (a fresh one from data-ticket-url after a disconnect). The socket
// tells the unread count on connect; each new notification bumps it and shows a toast, and the
// notification centre's list (if open) gets the row on top. Reconnects back off up to a minute.
(function () {
  var bell = document.querySelector("[data-bell]");
  if (!bell || !window.WebSocket) return;
  var count = bell.querySelector("[data-bell-count]"), toasts = document.querySelector("[data-toasts]");
  var ticket = bell.dataset.ticket, delay = 2000, closing = false;

  function show(n) {
    n = Math.max(0, n);
    bell.dataset.unread = String(n);
    count.textContent = String(n);
    bell.setAttribute("aria-label", "Notifications: " + n + " unread");
    document.querySelectorAll("[data-unread-count]").forEach(function (el) { el.textContent = String(n); });
  }

  function toast(note) {
    if (!toasts) return;
    var box = document.createElement("div"), title = document.createElement(note.url ? "a" : "strong");
    box.className = "toast " + (note.severity || "info");
    box.setAttribute("data-toast", note.id);
    title.textContent = note.title;
    if (note.url) title.href = note.url;
    box.appendChild(title);
    if (note.body && note.body !== note.title) {
      var body = document.createElement("p");
      body.textContent = note.body.length > 160 ? note.body.slice(0, 157) + "…" : note.body;
      box.appendChild(body);
    }
    toasts.appendChild(box);
    while (toasts.children.length > 3) toasts.removeChild(toasts.firstChild);
    setTimeout(function () { box.remove(); }, 8000);
  }

  function prepend(note) {  // on the notification centre: the new row on top of the list
    var list = document.querySelector("[data-inbox]"), tpl = document.getElementById("inbox-row");
    if (!list || !tpl) return;
    var row = tpl.content.firstElementChild.cloneNode(true);
    row.setAttribute("data-notification", note.id);
    row.querySelector("[data-title]").textContent = note.title;
    var link = row.querySelector("[data-link]");
    if (note.url) link.href = note.url; else link.remove();
    row.querySelector("[data-body]").textContent = note.body && note.body !== note.title ? note.body : "";
    row.querySelector("[data-when]").textContent = (note.created_at || "").slice(0, 16).replace("T", " ");
    var sev = row.querySelector("[data-severity]");
    sev.textContent = note.severity; sev.classList.add("sev-" + note.severity);
    row.querySelector("input[name=id]").value = note.id;
    var empty = list.querySelector("[data-empty]"); if (empty) empty.remove();
    list.insertBefore(row, list.firstChild);
  }

  function renew() {
    fetch(bell.dataset.ticketUrl, {credentials: "same-origin", headers: {"Accept": "application/json"}})
      .then(function (r) { if (!r.ok) throw new Error(r.status); return r.json(); })
      .then(function (j) { ticket = j.ticket; connect(); })
      .catch(later);
  }

  function later() {
    if (closing) return;
    setTimeout(renew, delay);
    delay = Math.min(delay * 2, 60000);
  }

  function connect() {
    if (!ticket) { later(); return; }
    var ws = new WebSocket(bell.dataset.wsUrl + "?ticket=" + encodeURIComponent(ticket));
    ticket = "";  // one use
    ws.onopen = function () { delay = 2000; bell.dataset.live = "1"; };
    ws.onmessage = function (e) {
      var m = JSON.parse(e.data);
      if (m.type === "unread") { show(m.count); }
      else if (m.type === "notification") {
        show(parseInt(bell.dataset.unread || "0", 10) + (m.notification.read ? 0 : 1));
        toast(m.notification);
        prepend(m.notification);
      }
    };
    ws.onclose = function () { bell.dataset.live = ""; later(); };
  }

  window.addEventListener("pagehide", function () { closing = true; });
  connect();
})();
