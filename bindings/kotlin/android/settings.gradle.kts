// Android library module packaging the Kotlin bindings as an AAR (with jniLibs from
// cargo-ndk). Built by ../build-aar.sh. NOT run in this repository's CI (no Android SDK
// there); the Kotlin code it packages is the code the JVM suite tests.
pluginManagement {
    repositories { google(); mavenCentral(); gradlePluginPortal() }
}
dependencyResolutionManagement {
    repositories { google(); mavenCentral() }
}
rootProject.name = "gaterouter-android"
