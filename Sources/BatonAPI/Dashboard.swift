import BatonCore
import BatonNode
import BatonStore
import Foundation
import HTTPTypes
import Hummingbird
import NIOCore

/// The web dashboard: server-rendered HTML, no front-end build. It signs in with the API's
/// tokens (a login form puts the token in an HttpOnly, SameSite=Strict cookie): a reader token
/// sees everything, an admin token may also redrive dead letters.
struct Dashboard: Sendable {
    let store: any JobStore
    let tokens: TokenTable
    static let cookie = "baton_token"

    func register(on router: Router<BasicRequestContext>) {
        router.get("/dashboard/login") { _, _ in Self.page("Sign in", refresh: false, body: Self.loginForm(error: nil)) }
        router.post("/dashboard/login") { request, _ in
            guard Self.sameOrigin(request) else {
                return Self.page("Not allowed", refresh: false, body: "<p>This form was posted from another origin.</p>", status: .forbidden)
            }
            let form = String(buffer: try await request.body.collect(upTo: 8192))
            let token = Self.formValue(form, "token") ?? ""
            guard tokens.match(Substring(token)) != nil else {
                return Self.page("Sign in", refresh: false, body: Self.loginForm(error: "That token is not in api.tokens."),
                                 status: .unauthorized)
            }
            var response = Response(status: .seeOther, headers: [.location: "/dashboard"])
            response.headers[.setCookie] = "\(Self.cookie)=\(token); Path=/dashboard; HttpOnly; SameSite=Strict"
            return response
        }
        router.post("/dashboard/logout") { _, _ in
            var response = Response(status: .seeOther, headers: [.location: "/dashboard/login"])
            response.headers[.setCookie] = "\(Self.cookie)=; Path=/dashboard; HttpOnly; SameSite=Strict; Max-Age=0"
            return response
        }
        router.get("/dashboard") { request, _ in
            try await guarded(request, .reader) { try await overview() }
        }
        router.get("/dashboard/jobs/{id}") { request, context in
            let id = try context.parameters.require("id")
            return try await guarded(request, .reader) { try await jobPage(id) }
        }
        router.get("/dashboard/dead-letters") { request, _ in
            try await guarded(request, .reader) { try await deadLetters(message: nil) }
        }
        router.post("/dashboard/dead-letters/{id}/redrive") { request, context in
            let id = try context.parameters.require("id")
            return try await guarded(request, .admin) {
                let job = try await store.redrive(jobID: id, fromStart: false)
                return try await deadLetters(message: "Job \(job.id) queued again at stage \(Self.stageName(job)).")
            }
        }
    }

    /// Whether a form POST comes from this dashboard's own pages: the cookie is SameSite=Strict,
    /// but a page on another port of the same host is the same site, so the browser's origin
    /// headers are checked too.
    static func sameOrigin(_ request: Request) -> Bool {
        if let site = request.headers[HTTPField.Name("sec-fetch-site")!] { return site == "same-origin" || site == "none" }
        guard let origin = request.headers[HTTPField.Name("origin")!] else { return true }
        guard let host = request.head.authority else { return false }
        return origin == "http://\(host)" || origin == "https://\(host)"
    }

    /// Runs `body` for a signed-in caller with `scope`; otherwise the login page (or 403).
    func guarded(_ request: Request, _ scope: APISettings.Scope, _ body: () async throws -> Response) async throws -> Response {
        if request.method == .post && !Self.sameOrigin(request) {
            return Self.page("Not allowed", refresh: false, body: "<p>This form was posted from another origin.</p>", status: .forbidden)
        }
        let presented = request.headers[.authorization].flatMap { $0.hasPrefix("Bearer ") ? $0.dropFirst(7) : nil }
            ?? Self.cookieValue(request.headers[.cookie] ?? "", Self.cookie).map { Substring($0) }
        guard let presented, let caller = tokens.match(presented) else {
            return Response(status: .seeOther, headers: [.location: "/dashboard/login"])
        }
        guard caller.scope >= scope else {
            return Self.page("Not allowed", refresh: false, body: "<p>This needs an \(scope.rawValue) token.</p>", status: .forbidden)
        }
        do {
            return try await body()
        } catch {
            let apiError = APIError(error)
            return Self.page("Error", refresh: false, body: "<p class=bad>\(Self.escape(apiError.message))</p>", status: apiError.status)
        }
    }

    // MARK: Pages

    func overview() async throws -> Response {
        let now = Date()
        let lanes = try await store.lanes()
        let nodes = NodeReport(nodes: try await store.nodes(), now: now)
        let dead = try await store.jobs(matching: JobFilter(states: JobState.deadLetterStates, limit: 10))
        let gates = try await store.gates().filter { $0.state == .held }
        let recent = try await store.jobs(matching: JobFilter(limit: 15))
        let handovers = try await store.recentEvents(kinds: [.claimed, .heartbeatLost, .rescued], limit: 200, window: 20_000)
            .filter { event in
                event.kind != .claimed || (event.detail["from_node"].map { $0 != event.nodeID } ?? false)
            }.prefix(10)
        var html = "<h2>Lanes</h2>" + Self.table(["Lane", "Cap", "Running", "Waiting", "Oldest wait", "Wait p50", "Wait p99"], lanes.map { lane in
            [Self.escape(lane.name), lane.cap.map(String.init) ?? "–", String(lane.running), String(lane.waiting),
             lane.oldestReadySec.map(DurationText.format) ?? "–", lane.wait.p50Ms.map { "\($0) ms" } ?? "–",
             lane.wait.p99Ms.map { "\($0) ms" } ?? "–"]
        })
        html += "<h2>Nodes</h2>" + Self.table(["Node", "Health", "Heartbeat", "In flight", "Region", "Version", "Config", "Drift"],
                                               nodes.rows.filter { $0.health != .stopped }.map { row in
            let info = row.node.info
            return [Self.escape(info.id), "<span class=\(row.health == .healthy ? "good" : "bad")>\(row.health.rawValue)</span>",
                    DurationText.format(now.timeIntervalSince(row.node.lastSeen)) + " ago", "\(row.node.inFlight)/\(info.capacity)",
                    Self.escape(info.region ?? "–"), Self.escape(info.version), Self.escape(info.configHash),
                    row.drift.isEmpty ? "" : "<span class=bad>\(row.drift.joined(separator: ", "))</span>"]
        })
        html += "<h2>Recent handovers</h2>" + Self.table(["At", "Job", "Stage", "What"], handovers.map { event in
            let d = event.detail
            let what: String
            switch event.kind {
            case .claimed:
                what = "\(d["from_node"] ?? "?") → \(event.nodeID ?? "?") after \(d["handover_ms"].flatMap(Double.init).map { DurationText.format($0 / 1000) } ?? "?")"
            case .heartbeatLost:
                what = "lost by \(event.nodeID ?? d["from_node"] ?? "?"): \(d["reason"] ?? "lease_expired")"
            default:
                what = "rescued from \(d["from_node"] ?? "?")"
            }
            return [JSONTime.string(event.at), Self.link(event.jobID), Self.escape(event.stage ?? "–"), Self.escape(what)]
        })
        html += "<h2>Recent jobs</h2>" + Self.table(["Job", "State", "Lane", "Stage", "Attempts", "Last node", "Updated"], recent.map(Self.jobRow))
        html += "<h2>Dead letters</h2>" + (dead.isEmpty ? "<p>None.</p>"
            : Self.table(["Job", "State", "Lane", "Stage", "Attempts", "Last node", "Updated"], dead.map(Self.jobRow))
                + "<p><a href=\"/dashboard/dead-letters\">All dead letters, with redrive</a></p>")
        html += "<h2>Held gates</h2>" + (gates.isEmpty ? "<p>None.</p>" : Self.table(["Key", "Since", "Dead jobs", "Held jobs", "Reason"], gates.map { gate in
            [Self.escape(gate.key), JSONTime.string(gate.heldSince), Self.escape(gate.deadJobs.joined(separator: ", ")), String(gate.heldJobs),
             Self.escape(gate.reason)]
        }))
        return Self.page("Overview", refresh: true, body: html)
    }

    func jobPage(_ id: String) async throws -> Response {
        guard let detail = try await store.detail(id: id) else {
            throw BatonError(.notFound, field: "id", "no job with id \"\(id)\"")
        }
        let job = detail.job
        var html = "<p><b>\(Self.escape(job.id))</b> <span class=\(job.state == .succeeded ? "good" : job.state.isTerminal ? "bad" : "")>"
            + "\(job.state.rawValue)</span> · lane \(Self.escape(job.spec.lane)) · attempts \(job.attempts)/\(job.spec.retry.maxAttempts)"
            + " · last written by \(Self.escape(job.lastNode ?? "–"))"
            + (job.lastReason.map { " · last reason <span class=bad>\(Self.escape($0))</span>" } ?? "") + "</p>"
        html += "<h2>Stages</h2>" + Self.table(["#", "Stage", "Kind", "State", "Node", "Started", "Duration", "Attempts", "Result"], detail.stages.map { stage in
            let duration = stage.startedAt.flatMap { start in stage.finishedAt.map { DurationText.format($0.timeIntervalSince(start)) } } ?? "–"
            let result = stage.exitCode.map { "exit \($0)" } ?? stage.httpStatus.map { "http \($0)" } ?? stage.lastReason ?? ""
            return [String(stage.index + 1), Self.escape(stage.name), stage.kind, stage.state.rawValue, Self.escape(stage.node ?? "–"),
                    stage.startedAt.map(JSONTime.string) ?? "–", duration, String(stage.attempts), Self.escape(result)]
        })
        let handovers = Handover.timeline(detail)
        if !handovers.isEmpty {
            html += "<h2>Handovers</h2><pre>" + Self.escape(handovers.joined(separator: "\n")) + "</pre>"
        }
        html += "<h2>Attempts</h2>" + Self.table(["Stage", "Attempt", "Fence", "Node", "Started", "Outcome", "Reason", "Message"], detail.attempts.map { a in
            [Self.escape(a.stageName), String(a.attempt), String(a.fence), Self.escape(a.nodeID), JSONTime.string(a.startedAt),
             a.outcome.rawValue, Self.escape(a.reason ?? ""), Self.escape(String((a.message ?? "").prefix(300)))]
        })
        html += "<h2>Events</h2>" + Self.table(["At", "Event", "Node", "Stage", "Detail"], detail.events.map { e in
            [JSONTime.string(e.at), e.kind.rawValue, Self.escape(e.nodeID ?? ""), Self.escape(e.stage ?? ""),
             Self.escape(e.detail.keys.sorted().map { "\($0)=\(e.detail[$0] ?? "")" }.joined(separator: " "))]
        })
        return Self.page("Job \(job.id)", refresh: !job.state.isTerminal, body: html)
    }

    func deadLetters(message: String?) async throws -> Response {
        let dead = try await store.jobs(matching: JobFilter(states: JobState.deadLetterStates, limit: 200))
        var html = message.map { "<p class=good>\(Self.escape($0))</p>" } ?? ""
        html += dead.isEmpty ? "<p>No dead letters.</p>" : Self.table(["Job", "State", "Lane", "Failed stage", "Attempts", "Reason", ""], dead.map { job in
            [Self.link(job.id), job.state.rawValue, Self.escape(job.spec.lane), Self.escape(Self.stageName(job)),
             String(job.attempts), Self.escape(job.lastReason ?? ""),
             "<form method=post action=\"/dashboard/dead-letters/\(Self.escape(job.id))/redrive\"><button>Redrive</button></form>"]
        })
        return Self.page("Dead letters", refresh: message == nil, body: html)
    }

    // MARK: HTML

    static func jobRow(_ job: JobRecord) -> [String] {
        [link(job.id), job.state.rawValue, escape(job.spec.lane), escape(stageName(job)),
         "\(job.attempts)/\(job.spec.retry.maxAttempts)", escape(job.lastNode ?? "–"), JSONTime.string(job.updatedAt)]
    }

    /// The job's current stage ("–" once every stage is done).
    static func stageName(_ job: JobRecord) -> String {
        job.stageIndex < job.spec.stages.count ? job.spec.stages[job.stageIndex].name : "–"
    }

    static func link(_ id: String) -> String { "<a href=\"/dashboard/jobs/\(escape(id))\">\(escape(id))</a>" }

    static func table(_ headers: [String], _ rows: [[String]]) -> String {
        guard !rows.isEmpty else { return "<p>None.</p>" }
        return "<table><tr>" + headers.map { "<th>\($0)</th>" }.joined() + "</tr>"
            + rows.map { "<tr>" + $0.map { "<td>\($0)</td>" }.joined() + "</tr>" }.joined() + "</table>"
    }

    static func loginForm(error: String?) -> String {
        (error.map { "<p class=bad>\(escape($0))</p>" } ?? "")
            + "<form method=post action=\"/dashboard/login\"><label>API token <input type=password name=token autofocus></label> "
            + "<button>Sign in</button></form><p>Any token from <code>api.tokens</code>: reader to look, admin to redrive.</p>"
    }

    static func page(_ title: String, refresh: Bool, body: String, status: HTTPResponse.Status = .ok) -> Response {
        let html = """
            <!doctype html><html lang=en><head><meta charset=utf-8><title>\(escape(title)) · Baton</title>
            \(refresh ? "<meta http-equiv=refresh content=5>" : "")
            <meta name=viewport content="width=device-width, initial-scale=1">
            <style>
            body{font:14px/1.4 -apple-system,system-ui,sans-serif;margin:1.5rem 2rem;color:#1d1d1f;background:#fafafa}
            h1{font-size:1.3rem;margin:0 0 1rem} h2{font-size:1.05rem;margin:1.6rem 0 .5rem}
            nav a{margin-right:1rem} table{border-collapse:collapse;width:100%;background:#fff}
            th,td{text-align:left;padding:.3rem .6rem;border-bottom:1px solid #e5e5e5;vertical-align:top}
            th{background:#f0f0f2;font-weight:600} .good{color:#1a7f37} .bad{color:#c62828}
            pre{background:#fff;padding:.6rem;border:1px solid #e5e5e5;overflow:auto} code{font-size:.95em}
            </style></head><body>
            <nav><b>Baton</b> · <a href="/dashboard">Overview</a><a href="/dashboard/dead-letters">Dead letters</a>
            <form method=post action="/dashboard/logout" style="display:inline"><button>Sign out</button></form></nav>
            <h1>\(escape(title))</h1>
            \(body)
            </body></html>
            """
        return Response(status: status, headers: [.contentType: "text/html; charset=utf-8"],
                        body: ResponseBody(byteBuffer: ByteBuffer(string: html)))
    }

    static func escape(_ text: String) -> String {
        var out = ""
        out.reserveCapacity(text.count)
        for c in text {
            switch c {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            case "'": out += "&#39;"
            default: out.append(c)
            }
        }
        return out
    }

    static func cookieValue(_ header: String, _ name: String) -> String? {
        for part in header.split(separator: ";") {
            let pair = part.trimmingCharacters(in: .whitespaces)
            if pair.hasPrefix(name + "=") { return String(pair.dropFirst(name.count + 1)) }
        }
        return nil
    }

    static func formValue(_ form: String, _ name: String) -> String? {
        for pair in form.split(separator: "&") where pair.hasPrefix(name + "=") {
            return String(pair.dropFirst(name.count + 1)).replacingOccurrences(of: "+", with: " ").removingPercentEncoding
        }
        return nil
    }
}
