// Search for the site opened from disk (file://). Browsers refuse to start a Web Worker from a
// file:// page, so the theme's search would stay at "Initializing search". Here, on file://
// pages only, `Worker` runs its script in a hidden frame of the page instead: the script's
// `postMessage` and "message" events cross between page and frame as events. The theme reads
// the search index from search/search_index.js there (written by Material's offline plugin).
// Loaded before the theme's own scripts (mkdocs.yml: extra.polyfills).
(function () {
  "use strict";
  if (location.protocol !== "file:") {
    return;
  }

  class FrameWorker extends EventTarget {
    constructor(url) {
      super();
      this.frame = document.createElement("iframe");
      this.frame.hidden = true;
      document.documentElement.appendChild(this.frame);
      this.scope = this.frame.contentWindow;
      this.waiting = [];
      this.ready = false;
      this.onmessage = null;
      // the script's replies: its global postMessage, as a worker's would arrive
      this.scope.postMessage = (data) => setTimeout(() => this.deliver(data));
      this.scope.importScripts = () => {
        throw new Error("importScripts is not available to a worker of a page opened from disk");
      };
      const script = this.scope.document.createElement("script");
      script.src = new URL(url, location.href).href;
      script.onload = () => {
        this.ready = true;
        this.waiting.splice(0).forEach((data) => this.send(data));
      };
      script.onerror = () => this.dispatchEvent(new Event("error"));
      this.scope.document.head.appendChild(script);
    }

    deliver(data) {
      const event = new MessageEvent("message", { data: data });
      if (typeof this.onmessage === "function") {
        this.onmessage(event);
      }
      this.dispatchEvent(event);
    }

    send(data) {
      const scope = this.scope;
      setTimeout(() => scope.dispatchEvent(new scope.MessageEvent("message", { data: data })));
    }

    postMessage(data) {
      if (this.ready) {
        this.send(data);
      } else {
        this.waiting.push(data);
      }
    }

    terminate() {
      this.frame.remove();
    }
  }

  window.Worker = FrameWorker;
})();
