// tend: the command-line client of tendd. Everything lives in the TendClient library (tested by TendTests).
import TendClient

Tend.main(hoistGlobalOptions(Array(CommandLine.arguments.dropFirst())))
