import XCTest
@testable import MLRouter

final class ModelPlacementTests: XCTestCase {
    private func servers(_ n: Int, load: [Int] = []) -> [ModelPlacement.Server] {
        (0..<n).map { ModelPlacement.Server(id: "10.0.0.\($0 + 1):5432", load: $0 < load.count ? load[$0] : 0) }
    }

    func testAffinityIsStableAndSpreadsModels() {
        let fleet = servers(4)
        var homes: [Int: Int] = [:]
        for model in 0..<400 {
            let first = ModelPlacement.place(model: "model-\(model)", servers: fleet)!
            XCTAssertEqual(ModelPlacement.place(model: "model-\(model)", servers: fleet), first, "same model, same home")
            homes[first.index, default: 0] += 1
        }
        XCTAssertEqual(homes.count, 4)
        for (_, count) in homes { XCTAssertGreaterThan(count, 60, "rendezvous spreads models: \(homes)") }
    }

    func testRemovingAServerMovesOnlyItsModels() {
        let fleet = servers(4)
        var reduced = fleet
        reduced[2].healthy = false
        for model in 0..<300 {
            let before = ModelPlacement.place(model: "m\(model)", servers: fleet)!.index
            let after = ModelPlacement.place(model: "m\(model)", servers: reduced)!.index
            if before != 2 { XCTAssertEqual(before, after, "model m\(model) moved although its home stayed") }
            XCTAssertNotEqual(after, 2)
        }
    }

    func testLoneClientNeverSpills() {
        // One statement in flight at a time: the home's load is at most 1, the bound is 1.25 × 0.5 + 1.
        var fleet = servers(2)
        let home = ModelPlacement.place(model: "m", servers: fleet)!.index
        fleet[home].load = 1
        XCTAssertEqual(ModelPlacement.place(model: "m", servers: fleet), .init(index: home, spilled: false))
    }

    func testBoundedLoadSpillsToTheNextServer() {
        var fleet = servers(3)
        let order = ModelPlacement.ranking(model: "hot", servers: fleet)
        fleet[order[0]].load = 10
        fleet[order[1]].load = 1
        fleet[order[2]].load = 1  // average 4, bound 6: the home (10) is over it
        XCTAssertEqual(ModelPlacement.place(model: "hot", servers: fleet), .init(index: order[1], spilled: true))
        fleet[order[0]].load = 6  // average 2.67, bound 4.33: still over
        XCTAssertEqual(ModelPlacement.place(model: "hot", servers: fleet)?.spilled, true)
        fleet[order[0]].load = 4  // average 2, bound 3.5... 4 > 3.5
        fleet[order[1]].load = 4
        fleet[order[2]].load = 4  // everyone busy alike: bound 6, home within
        XCTAssertEqual(ModelPlacement.place(model: "hot", servers: fleet), .init(index: order[0], spilled: false))
    }

    func testSeveralHomesShareAModelByLoad() {
        var fleet = servers(4)
        let order = ModelPlacement.ranking(model: "m", servers: fleet)
        fleet[order[0]].load = 2
        XCTAssertEqual(ModelPlacement.place(model: "m", servers: fleet, homes: 2), .init(index: order[1], spilled: false))
    }

    func testNoHealthyServerMeansFallback() {
        var fleet = servers(2)
        fleet[0].healthy = false
        fleet[1].healthy = false
        XCTAssertNil(ModelPlacement.place(model: "m", servers: fleet))
    }

    func testUnknownModelGoesToTheLeastLoaded() {
        let fleet = servers(3, load: [3, 1, 2])
        XCTAssertEqual(ModelPlacement.place(model: nil, servers: fleet)?.index, 1)
        XCTAssertEqual(ModelPlacement.place(model: "m", servers: fleet, affinity: false)?.index, 1)
    }

    func testWeightsShiftHomes() {
        var fleet = servers(2)
        fleet[0].weight = 9
        let homes = (0..<500).map { ModelPlacement.place(model: "w\($0)", servers: fleet)!.index }
        XCTAssertGreaterThan(homes.filter { $0 == 0 }.count, 400)
    }

    func testGlob() {
        XCTAssertTrue(Glob.matches("meta-llama/*", "meta-llama/Meta-Llama-3.1-8B-Instruct"))
        XCTAssertTrue(Glob.matches("intfloat/e5-*-v?", "intfloat/e5-small-v2"))
        XCTAssertTrue(Glob.matches("*", ""))
        XCTAssertFalse(Glob.matches("meta-llama/*", "intfloat/e5-small-v2"))
        XCTAssertFalse(Glob.matches("a?c", "abbc"))
    }
}
