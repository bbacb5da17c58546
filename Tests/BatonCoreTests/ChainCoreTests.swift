import BatonCore
import Foundation
import Testing

@Suite struct ChainCoreTests {
    @Test func stagePlacementTimeoutClassAndHTTPRequestsRoundTripThroughTheStoredForm() throws {
        let text = #"""
            {"region_affinity": "eu", "stages": [
              {"name": "build", "run": {"shell": "make"}, "node_tags": ["mac", "xcode", "mac"]},
              {"name": "upload", "run": {"shell": "./up.sh"}, "timeout_sec": 60, "timeout_class": "upload", "region_affinity": "us"},
              {"name": "notify", "run": {"http": {"url": "https://h.example/{{job.id}}", "headers": {"Authorization": "Bearer {{env.TOKEN}}"},
                                                  "body": "{\"ipa\": {{output.ipa | json}}}"}}}
            ]}
            """#
        let spec = try #require(try EnvelopeReader().read(Data(text.utf8)).first)
        #expect(spec.stages[0].nodeTags == ["mac", "xcode"])
        #expect(spec.placement(ofStage: 0) == Placement(region: "eu", tags: ["mac", "xcode"]))
        #expect(spec.placement(ofStage: 1) == Placement(region: "us"))
        #expect(spec.stages[1].timeoutClass == .upload)
        guard case .http(let request) = spec.stages[2].run else {
            Issue.record("expected an http stage")
            return
        }
        #expect(request.method == "POST", "a body makes POST the default")
        #expect(try JobSpec.decode(Data(spec.storedJSON().utf8)) == spec)
        #expect(try EnvelopeReader().read(spec.envelope, path: "") == spec)
    }

    @Test func placementAdmitsOnlyNodesOfItsRegionWithEveryTag() {
        let placement = Placement(region: "eu", tags: ["mac", "signing"])
        #expect(placement.admits(region: "eu", tags: ["signing", "mac", "arm64"]))
        #expect(!placement.admits(region: "us", tags: ["signing", "mac"]))
        #expect(!placement.admits(region: "eu", tags: ["mac"]))
        #expect(Placement().admits(region: nil, tags: []))
        #expect(placement.tagsColumn == "mac,signing")
    }

    @Test func templatesRenderOutputsJobFieldsAndJSONQuoting() throws {
        let template = try Template.parse(#"{"url": {{output.url | json}}, "job": "{{ job.id }}"}"#, field: "body", allowEnv: false)
        let rendered = try template.render { reference throws(BatonError) in
            switch reference.namespace {
            case .output: return "https://x/\"quoted\""
            case .job: return "j-1"
            default: throw BatonError(.invalidInput, "unexpected")
            }
        }
        #expect(rendered == #"{"url": "https://x/\"quoted\"", "job": "j-1"}"#)
        #expect(template.references.map(\.name) == ["url", "id"])
    }

    @Test func outputFilesReadKeyValueLinesArtifactsAndJSON() throws {
        let lines = try StageOutput.parse(Data("# build\nipa=/out/app.ipa\nversion = 7\nartifact=s3://b/app.ipa\n\nempty=\n".utf8),
                                          stage: "build")
        #expect(lines.values == ["ipa": "/out/app.ipa", "version": " 7", "empty": ""])
        #expect(lines.artifacts == ["s3://b/app.ipa"])
        let json = try StageOutput.parse(Data(#"{"build": 42, "ok": true, "artifacts": ["file:///a"]}"#.utf8), stage: "x")
        #expect(json.values == ["build": "42", "ok": "true"])
        #expect(json.artifacts == ["file:///a"])
    }

    @Test func badOutputFilesAreRefusedNamingTheLine() {
        #expect(throws: BatonError.self) { try StageOutput.parse(Data("ok=1\njust text\n".utf8), stage: "s") }
        do {
            _ = try StageOutput.parse(Data("ok=1\njust text\n".utf8), stage: "s")
        } catch {
            #expect(error.field == "$BATON_OUTPUT line 2")
            #expect(error.message.contains("expected KEY=VALUE"))
        }
        #expect(throws: BatonError.self) { try StageOutput.parse(Data("bad key=1".utf8), stage: "s") }
        #expect(throws: BatonError.self) { try StageOutput.parse(Data(#"{"nested": {"a": 1}}"#.utf8), stage: "s") }
        #expect(throws: BatonError.self) { try StageOutput.parse(Data(count: StageOutput.maxFileBytes + 1), stage: "s") }
    }

    @Test func laterStagesSeeMergedOutputsAsVariablesAndADocument() {
        let outputs = JobOutputs()
            .adding(StageOutput(stage: "build", values: ["ipa": "a.ipa", "build-id": "1"], artifacts: ["s3://a"]))
            .adding(StageOutput(stage: "sign", values: ["ipa": "signed.ipa"]))
        #expect(outputs.values == ["ipa": "signed.ipa", "build-id": "1"])
        #expect(outputs.environment == ["BATON_OUT_IPA": "signed.ipa", "BATON_OUT_BUILD_ID": "1", "BATON_ARTIFACTS": "s3://a"])
        #expect(JobOutputs.stored(outputs.storedJSON) == outputs)
        #expect(outputs.keeping(stages: ["build"]).values == ["ipa": "a.ipa", "build-id": "1"])
        #expect(JobOutputs.stored(nil).isEmpty)
    }
}
